"""CDISC ODM 1.3.2 XML: study metadata (events for weeks 0/4/12/24 and an
unscheduled repeating event, one form and item group per dataset, items with
data types, code lists in English and Bangla) and clinical data keyed by study
id, each row's item group with an audit record (who by role, where, when, which
database record); each item's database column is its ItemDef's `source` Alias.

Generated from the same `Dataset` definitions as the CSV and SPSS files."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, tzinfo
from decimal import Decimal
from pathlib import Path

from export.spec import Dataset, Variable
from export.writers import format_value

NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
VISIT_WEEKS = (0, 4, 12, 24)
UNSCHEDULED = "SE.UNSCHEDULED"
DATA_TYPES = {
    "string": "text",
    "integer": "integer",
    "decimal": "float",
    "date": "date",
    "datetime": "datetime",
    "time": "partialTime",  # HH:MM, as in the CSV (ODM's `time` needs seconds)
    "boolean": "integer",  # 1/0 with the Yes/No code list, as in the CSV and SPSS files
}
USERS = ("system", "participant", "admin", "coordinator", "cli", "staff")
LOCATION = "LOC.BSMMU"
MDV = "MDV.1"


def _el(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, f"{{{NS}}}{tag}", attrs)


def _oid(*parts: str) -> str:
    return ".".join(p.upper() for p in parts)


def item_oid(dataset: Dataset, variable: Variable) -> str:
    """The ItemDef OID of a variable."""
    return _oid("I", dataset.name, variable.name)


def codelist_oid(dataset: Dataset, variable: Variable) -> str:
    """The CodeList OID of a variable with allowed values."""
    return _oid("CL", dataset.name, variable.name)


def unit_oid(unit: str) -> str:
    """The MeasurementUnit OID of a unit (`%` → `MU.PCT`): OIDs stay plain ASCII."""
    spelled = {"%": "PCT", "°C": "DEGC", "°F": "DEGF"}.get(unit)
    return _oid("MU", spelled or re.sub(r"[^A-Za-z0-9]+", "_", unit).strip("_") or "UNIT")


def event_oid(week: int) -> str:
    """The StudyEventDef OID of a visit week."""
    return _oid("SE", f"WEEK{week}")


def _translated(parent: ET.Element, en: str, bn: str | None) -> None:
    text = _el(parent, "TranslatedText")
    text.set(XML_LANG, "en")
    text.text = en
    if bn:
        other = _el(parent, "TranslatedText")
        other.set(XML_LANG, "bn")
        other.text = bn


def _items(dataset: Dataset) -> list[Variable]:
    return [v for v in dataset.variables if v.name != "study_id"]


def _value(variable: Variable, value: object, tz: tzinfo) -> str:
    """A value as ODM text: as in the CSV, but decimals never in exponent form
    (ODM `float` is an xs:decimal)."""
    if variable.kind == "decimal":
        text = format(Decimal(repr(float(value))), "f")  # type: ignore[arg-type]
        return text.rstrip("0").rstrip(".") if "." in text else text
    return format_value(variable, value, tz)


def _event_of(dataset: Dataset, row: dict[str, object], weeks: tuple[int, ...]) -> tuple[str, str | None]:
    """The study event a row belongs to, and its repeat key in the repeating event."""
    if dataset.event is not None:
        return _oid("SE", dataset.event), None
    week = row.get(dataset.event_week_var) if dataset.event_week_var else None
    if week in weeks:
        return event_oid(int(str(week))), None
    key = row.get(dataset.repeat_key_var) if dataset.repeat_key_var else None
    return UNSCHEDULED, f"{dataset.name}-{key}"


def _form_repeat_key(dataset: Dataset, row: dict[str, object]) -> str | None:
    if dataset.repeat_key_var is None:
        return None
    return str(row.get(dataset.repeat_key_var))


def _event_forms(datasets: list[Dataset], weeks: tuple[int, ...]) -> dict[str, list[str]]:
    """Which forms each study event may hold (the StudyEventDef's FormRefs)."""
    forms: dict[str, list[str]] = {event_oid(w): [] for w in weeks}
    forms[UNSCHEDULED] = []
    for dataset in datasets:
        form = _oid("F", dataset.name)
        if dataset.event is not None:
            forms[_oid("SE", dataset.event)].append(form)
            continue
        for week in dataset.weeks if dataset.event_week_var else ():
            if week in weeks:
                forms[event_oid(week)].append(form)
        forms[UNSCHEDULED].append(form)
    return forms


def _metadata(study: ET.Element, datasets: list[Dataset], visits: list[tuple[int, str, str | None]]) -> None:
    """BasicDefinitions (units) and the MetaDataVersion, in the schema's order."""
    units = sorted({v.unit for d in datasets for v in d.variables if v.unit})
    if units:
        basic = _el(study, "BasicDefinitions")
        for unit in units:
            definition = _el(basic, "MeasurementUnit", OID=unit_oid(unit), Name=unit)
            _translated(_el(definition, "Symbol"), unit, None)
    mdv = _el(study, "MetaDataVersion", OID=MDV, Name="SSc follow-up bot export")
    weeks = tuple(w for w, _, _ in visits)
    protocol = _el(mdv, "Protocol")
    for order, oid in enumerate([*(event_oid(w) for w in weeks), UNSCHEDULED], start=1):
        _el(protocol, "StudyEventRef", StudyEventOID=oid, OrderNumber=str(order), Mandatory="No")
    forms = _event_forms(datasets, weeks)
    for week, name, name_bn in visits:
        definition = _el(mdv, "StudyEventDef", OID=event_oid(week), Name=name, Repeating="No", Type="Scheduled")
        _translated(_el(definition, "Description"), name, name_bn)
        for form in forms[event_oid(week)]:
            _el(definition, "FormRef", FormOID=form, Mandatory="No")
    unscheduled = _el(
        mdv, "StudyEventDef", OID=UNSCHEDULED, Name="Unscheduled (between visits)", Repeating="Yes", Type="Unscheduled"
    )
    for form in forms[UNSCHEDULED]:
        _el(unscheduled, "FormRef", FormOID=form, Mandatory="No")
    for dataset in datasets:
        repeating = "Yes" if dataset.repeat_key_var else "No"
        form_def = _el(mdv, "FormDef", OID=_oid("F", dataset.name), Name=dataset.label, Repeating=repeating)
        _el(form_def, "ItemGroupRef", ItemGroupOID=_oid("IG", dataset.name), Mandatory="Yes")
    for dataset in datasets:
        group = _el(mdv, "ItemGroupDef", OID=_oid("IG", dataset.name), Name=dataset.label, Repeating="No")
        for order, variable in enumerate(_items(dataset), start=1):
            _el(group, "ItemRef", ItemOID=item_oid(dataset, variable), OrderNumber=str(order), Mandatory="No")
    for dataset in datasets:
        for variable in _items(dataset):
            item = _el(
                mdv, "ItemDef", OID=item_oid(dataset, variable), Name=variable.name, DataType=DATA_TYPES[variable.kind]
            )
            _translated(_el(item, "Question"), variable.label, variable.label_bn)
            if variable.unit:
                _el(item, "MeasurementUnitRef", MeasurementUnitOID=unit_oid(variable.unit))
            if variable.values:
                _el(item, "CodeListRef", CodeListOID=codelist_oid(dataset, variable))
            _el(item, "Alias", Context="source", Name=variable.source)
    for dataset in datasets:
        for variable in _items(dataset):
            if not variable.values:
                continue
            kind = "integer" if all(isinstance(k, int) for k in variable.values) else "text"
            codelist = _el(mdv, "CodeList", OID=codelist_oid(dataset, variable), Name=variable.label, DataType=kind)
            for code, label in variable.values.items():
                entry = _el(codelist, "CodeListItem", CodedValue=str(code))
                bn = variable.values_bn.get(code) if variable.values_bn else None
                _translated(_el(entry, "Decode"), label, bn)


def _admin(root: ET.Element, study_oid: str, created: datetime) -> None:
    admin = _el(root, "AdminData", StudyOID=study_oid)
    for user in USERS:
        user_el = _el(admin, "User", OID=_oid("USR", user), UserType="Other")
        _el(user_el, "LoginName").text = user
    location = _el(admin, "Location", OID=LOCATION, Name="BSMMU rheumatology, Dhaka", LocationType="Site")
    _el(
        location,
        "MetaDataVersionRef",
        StudyOID=study_oid,
        MetaDataVersionOID=MDV,
        EffectiveDate=created.date().isoformat(),
    )


def record_source(dataset: Dataset, row: dict[str, object]) -> str:
    """Where a row comes from, as the audit record's SourceID: `dose_log.id=12`,
    `participants.study_id=BSM-001`."""
    if dataset.repeat_key_var is not None:
        key = next(v for v in dataset.variables if v.name == dataset.repeat_key_var)
        return f"{key.source}={row.get(key.name)}"
    week = f"; week={row.get(dataset.event_week_var)}" if dataset.event_week_var else ""
    return f"{dataset.name}: study_id={row.get('study_id')}{week}"


def _audit(parent: ET.Element, row: dict[str, object], source: str, tz: tzinfo, created: datetime) -> None:
    """The AuditRecord of one row's item group (who by role, where, when, which
    record), in the schema's order; every item of the row shares it."""
    recorded_at = row.get("_recorded_at")
    recorded_by = str(row.get("_recorded_by") or "system")
    audit = _el(parent, "AuditRecord")
    _el(audit, "UserRef", UserOID=_oid("USR", recorded_by if recorded_by in USERS else "staff"))
    _el(audit, "LocationRef", LocationOID=LOCATION)
    stamp = recorded_at if isinstance(recorded_at, datetime) else created
    _el(audit, "DateTimeStamp").text = stamp.astimezone(tz).isoformat(timespec="seconds")
    _el(audit, "SourceID").text = source


def _clinical(
    root: ET.Element, datasets: list[Dataset], study_oid: str, weeks: tuple[int, ...], tz: tzinfo, created: datetime
) -> None:
    """SubjectData per study id: events (in the protocol's order), forms, items with audit records."""
    clinical = _el(root, "ClinicalData", StudyOID=study_oid, MetaDataVersionOID=MDV)
    order = {oid: i for i, oid in enumerate([*(event_oid(w) for w in weeks), UNSCHEDULED])}
    per_subject: dict[str, dict[tuple[str, str | None], list[tuple[Dataset, dict[str, object]]]]] = {}
    for dataset in datasets:
        for row in dataset.rows:
            if not row.get("study_id"):
                continue
            events = per_subject.setdefault(str(row["study_id"]), {})
            events.setdefault(_event_of(dataset, row, weeks), []).append((dataset, row))
    for study_id in sorted(per_subject):
        subject = _el(clinical, "SubjectData", SubjectKey=study_id)
        events = per_subject[study_id]
        for oid, repeat in sorted(events, key=lambda k: (order[k[0]], k[1] or "")):
            attrs = {"StudyEventOID": oid}
            if repeat is not None:
                attrs["StudyEventRepeatKey"] = repeat
            event_el = _el(subject, "StudyEventData", **attrs)
            for dataset, row in events[(oid, repeat)]:
                form_attrs = {"FormOID": _oid("F", dataset.name)}
                repeat_key = _form_repeat_key(dataset, row)
                if repeat_key is not None:
                    form_attrs["FormRepeatKey"] = repeat_key
                form_el = _el(event_el, "FormData", **form_attrs)
                group = _el(form_el, "ItemGroupData", ItemGroupOID=_oid("IG", dataset.name))
                _audit(group, row, record_source(dataset, row), tz, created)
                for variable in _items(dataset):
                    value = row.get(variable.name)
                    if value is None or value == "":
                        continue
                    _el(group, "ItemData", ItemOID=item_oid(dataset, variable), Value=_value(variable, value, tz))


def build_odm(
    datasets: list[Dataset],
    *,
    study_oid: str,
    study_name: str,
    tz: tzinfo,
    created: datetime,
    visits: list[tuple[int, str, str | None]] | None = None,
) -> ET.Element:
    """The ODM document as an element tree. `visits`: (week, name, Bangla name)
    of the protocol's visits (default weeks 0, 4, 12, 24)."""
    ET.register_namespace("", NS)
    visits = visits or [(w, "Baseline (week 0)" if w == 0 else f"Week {w}", None) for w in VISIT_WEEKS]
    root = ET.Element(
        f"{{{NS}}}ODM",
        {
            "FileType": "Snapshot",
            "FileOID": _oid("EXPORT", study_oid, created.strftime("%Y%m%dT%H%M%S")),
            "CreationDateTime": created.astimezone(tz).isoformat(timespec="seconds"),
            "ODMVersion": "1.3.2",
            "Granularity": "All",
            "Originator": "SSc trial follow-up bot",
        },
    )
    study = _el(root, "Study", OID=study_oid)
    global_vars = _el(study, "GlobalVariables")
    _el(global_vars, "StudyName").text = study_name
    _el(global_vars, "StudyDescription").text = "Telegram follow-up of participants (self-reports, doses, alerts)"
    _el(global_vars, "ProtocolName").text = study_oid
    _metadata(study, datasets, visits)
    _admin(root, study_oid, created)
    _clinical(root, datasets, study_oid, tuple(w for w, _, _ in visits), tz, created)
    return root


def write_odm(
    datasets: list[Dataset],
    directory: Path,
    *,
    study_oid: str,
    tz: tzinfo,
    created: datetime,
    visits: list[tuple[int, str, str | None]] | None = None,
    study_name: str,
) -> Path:
    """`trial_record_odm.xml`."""
    root = build_odm(datasets, study_oid=study_oid, study_name=study_name, tz=tz, created=created, visits=visits)
    ET.indent(root)
    path = directory / "trial_record_odm.xml"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
