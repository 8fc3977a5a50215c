"""The shared database: typed SQLAlchemy 2 models, the engine and sessions."""

from models.alerts import Alert, AlertDelivery, AlertLevel, DeliveryStatus
from models.base import Base
from models.entities import (
    AuditChainHead,
    AuditEntry,
    ChatLink,
    EnrollmentCode,
    Language,
    Participant,
    ParticipantStatus,
    ProcessedUpdate,
)
from models.media import MediaStatus, ReportMedia
from models.questionnaires import AdverseEvent, QuestionnaireAnswer, QuestionnaireSession, QuestionnaireStatus
from models.reports import TeamReport
from models.schedule import (
    ClinicVisit,
    DoseAnswer,
    DoseLog,
    MessageStatus,
    ParticipantReach,
    ScheduledMessage,
    VisitStatus,
)

__all__ = [
    "AdverseEvent",
    "Alert",
    "AlertDelivery",
    "AlertLevel",
    "AuditChainHead",
    "AuditEntry",
    "Base",
    "ChatLink",
    "ClinicVisit",
    "DeliveryStatus",
    "DoseAnswer",
    "DoseLog",
    "EnrollmentCode",
    "Language",
    "MediaStatus",
    "MessageStatus",
    "Participant",
    "ParticipantReach",
    "ParticipantStatus",
    "ProcessedUpdate",
    "QuestionnaireAnswer",
    "QuestionnaireSession",
    "QuestionnaireStatus",
    "ReportMedia",
    "ScheduledMessage",
    "TeamReport",
    "VisitStatus",
]
