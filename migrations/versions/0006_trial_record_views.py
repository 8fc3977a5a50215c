"""read-only views for the main trial record

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 01:15:00

A stable, documented face of the shared database for an EDC or a statistician
reading it live: the same view names and columns on SQLite and PostgreSQL,
keyed by study id, with no Telegram id, name or phone number. Times are UTC
(PostgreSQL: timestamptz; SQLite: 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in UTC).
JSON columns are text. The bot's own tables may change; these views change only
with a new migration and a README entry.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _views(json_text: str) -> dict[str, str]:
    j = json_text  # how a JSON column becomes text on this database
    return {
        "trial_participants": """
            SELECT p.study_id, p.arm, p.baseline_date, p.language, p.status,
                   p.created_at AS enrolled_at, c.linked_at,
                   p.paused_until, p.pause_reason, p.withdrawn_at, p.withdrawal_reason
            FROM participants p LEFT JOIN chat_links c ON c.participant_id = p.id""",
        "trial_visits": """
            SELECT p.study_id, v.week, v.target_date, v.visit_date, v.window_start, v.window_end,
                   v.status, v.attended_on, v.reschedule_requested_at, v.recorded_at
            FROM clinic_visits v JOIN participants p ON p.id = v.participant_id""",
        "trial_doses": """
            SELECT d.id AS dose_id, p.study_id, d.regimen, d.drug, d.dose_date, d.planned_time,
                   d.reminded_at, d.answer, d.answered_at
            FROM dose_log d JOIN participants p ON p.id = d.participant_id""",
        "trial_questionnaire_responses": f"""
            SELECT s.id AS response_id, p.study_id, s.instrument_id, s.instrument_version, s.status,
                   s.started_at, s.completed_at, {j.format("s.scores")} AS scores_json,
                   {j.format("s.triage")} AS triage_json
            FROM questionnaire_sessions s JOIN participants p ON p.id = s.participant_id""",
        "trial_questionnaire_answers": f"""
            SELECT a.session_id AS response_id, p.study_id, s.instrument_id, a.instrument_version,
                   a.item_id, {j.format("a.value")} AS value_json, a.skipped, a.answered_at
            FROM questionnaire_answers a
            JOIN questionnaire_sessions s ON s.id = a.session_id
            JOIN participants p ON p.id = s.participant_id""",
        "trial_adverse_events": """
            SELECT e.id AS ae_id, p.study_id, e.session_id AS response_id, e.category, e.term, e.onset_date,
                   e.grade, e.serious, e.results_in_death, e.life_threatening, e.hospitalisation,
                   e.disability, e.congenital_anomaly, e.important_medical_event, e.reported_at, e.alert_id
            FROM adverse_events e JOIN participants p ON p.id = e.participant_id""",
        "trial_alerts": """
            SELECT a.id AS alert_id, p.study_id, a.kind, a.level, a.summary, a.aware_at,
                   a.deadline_at AS sae_deadline_at, a.acknowledged_at, a.escalated_at
            FROM alerts a LEFT JOIN participants p ON p.id = a.participant_id""",
    }


def upgrade() -> None:
    json_text = "{}::text" if op.get_bind().dialect.name == "postgresql" else "{}"
    for name, body in _views(json_text).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in reversed(list(_views("{}"))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
