"""The one bilingual text type: a string in each study language, verbatim."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Text(BaseModel):
    """A participant-facing string in each language; a missing one falls back
    to English (then Bangla), as a questionnaire item may give only one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    en: str | None = None
    bn: str | None = None

    def get(self, language: str) -> str:
        """The text in `language`, falling back to English (then Bangla)."""
        value = self.bn if language == "bn" else self.en
        return value or self.en or self.bn or ""


class BilingualText(Text):
    """A Text that must say it in both languages (trial facts in the protocol file:
    a missing or empty language is a mistake in the file, not a fallback)."""

    en: Annotated[str, Field(min_length=1)]
    bn: Annotated[str, Field(min_length=1)]
