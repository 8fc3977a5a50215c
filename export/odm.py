"""CDISC ODM 1.3.2 XML: study metadata (events for weeks 0/4/12/24 and an
unscheduled repeating event, one form and item group per dataset, items with
data types, code lists in English and Bangla) and clinical data keyed by study
id, each value with an audit record (who by role, where, when).

Generated from the same `Dataset` definitions as the CSV and SPSS files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, tzinfo
from pathlib import Path

from export.spec import Dataset, Variable
from export.writers import format_value

NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
VISIT_WEEKS = (0, 4, 12, 24)
DATA_TYPES = {
    "string": "text",
    "integer": "integer",
    "decimal": "float",
    "date": "date",
    "datetime": "datetime",
    "boolean": "integer",  # 1/0 with the Yes/No code list, as in the CSV and SPSS files
}
USERS = ("system", "participant", "admin", "coordinator", "cli")
LOCATION = "LOC.BSMMU"


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


def _event_of(dataset: Dataset, row: dict[str, object]) -> tuple[str, str | None]:
    if dataset.event is not None:
        return _oid("SE", dataset.event), None
    if dataset.event_week_var is not None and row.get(dataset.event_week_var) in VISIT_WEEKS:
        return _oid("SE", f"WEEK{row[dataset.event_week_var]}"), None
    key = row.get(dataset.repeat_key_var) if dataset.repeat_key_var else None
    return "SE.UNSCHEDULED", str(key) if key is not None else None


def build_odm(datasets: list[Dataset], *, study_oid: str, study_name: str, tz: tzinfo, created: datetime) -> ET.Element:
    """The ODM document as an element tree."""
    ET.register_namespace("", NS)
    root = ET.Element(
        f"{{{NS}}}ODM",
        {
            "FileType": "Snapshot",
            "FileOID": _oid("EXPORT", created.strftime("%Y%m%dT%H%M%S")),
            "CreationDateTime": created.astimezone(tz).isoformat(timespec="seconds"),
            "ODMVersion": "1.3.2",
            "Granularity": "All",
        },
    )
    study = _el(root, "Study", OID=study_oid)
    global_vars = _el(study, "GlobalVariables")
    _el(global_vars, "StudyName").text = study_name
    _el(global_vars, "StudyDescription").text = "Telegram follow-up of participants (self-reports, doses, alerts)"
    _el(global_vars, "ProtocolName").text = study_oid
    mdv = _el(study, "MetaDataVersion", OID="MDV.1", Name="SSc follow-up bot export")
    protocol = _el(mdv, "Protocol")
    events = [f"WEEK{w}" for w in VISIT_WEEKS] + ["UNSCHEDULED"]
    for order, event in enumerate(events, start=1):
        _el(protocol, "StudyEventRef", StudyEventOID=_oid("SE", event), OrderNumber=str(order), Mandatory="No")
    forms_by_event: dict[str, list[str]] = {_oid("SE", e): [] for e in events}
    for dataset in datasets:
        form_oid = _oid("F", dataset.name)
        if dataset.event is not None:
            forms_by_event[_oid("SE", dataset.event)].append(form_oid)
        else:
            targets = [_oid("SE", f"WEEK{w}") for w in VISIT_WEEKS] if dataset.event_week_var else []
            for target in [*targets, "SE.UNSCHEDULED"]:
                forms_by_event[target].append(form_oid)
    for event in events:
        oid = _oid("SE", event)
        name = "Unscheduled (between visits)" if event == "UNSCHEDULED" else f"Week {event[4:]}"
        definition = _el(
            mdv,
            "StudyEventDef",
            OID=oid,
            Name=name,
            Repeating="Yes" if event == "UNSCHEDULED" else "No",
            Type="Unscheduled" if event == "UNSCHEDULED" else "Scheduled",
        )
        for form_oid in forms_by_event[oid]:
            _el(definition, "FormRef", FormOID=form_oid, Mandatory="No")
    for dataset in datasets:
        form_def = _el(mdv, "FormDef", OID=_oid("F", dataset.name), Name=dataset.label, Repeating="No")
        _el(form_def, "ItemGroupRef", ItemGroupOID=_oid("IG", dataset.name), Mandatory="Yes")
    for dataset in datasets:
        group = _el(mdv, "ItemGroupDef", OID=_oid("IG", dataset.name), Name=dataset.label, Repeating="No")
        for order, variable in enumerate(_items(dataset), start=1):
            _el(group, "ItemRef", ItemOID=item_oid(dataset, variable), OrderNumber=str(order), Mandatory="No")
    for dataset in datasets:
        for variable in _items(dataset):
            item = _el(
                mdv,
                "ItemDef",
                OID=item_oid(dataset, variable),
                Name=variable.name,
                DataType=DATA_TYPES[variable.kind],
            )
            question = _el(item, "Question")
            _translated(question, variable.label, None)
            if variable.unit:
                _el(item, "MeasurementUnitRef", MeasurementUnitOID=_oid("MU", variable.unit))
            if variable.values:
                _el(item, "CodeListRef", CodeListOID=codelist_oid(dataset, variable))
    units = sorted({v.unit for d in datasets for v in d.variables if v.unit})
    for unit in units:
        definition = _el(mdv, "MeasurementUnit", OID=_oid("MU", unit), Name=unit)
        _translated(_el(definition, "Symbol"), unit, None)
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

    admin = _el(root, "AdminData")
    for user in USERS:
        user_el = _el(admin, "User", OID=_oid("USR", user))
        _el(user_el, "LoginName").text = user
    location = _el(admin, "Location", OID=LOCATION, Name="BSMMU rheumatology, Dhaka")
    _el(
        location,
        "MetaDataVersionRef",
        StudyOID=study_oid,
        MetaDataVersionOID="MDV.1",
        EffectiveDate=created.date().isoformat(),
    )

    clinical = _el(root, "ClinicalData", StudyOID=study_oid, MetaDataVersionOID="MDV.1")
    subjects: dict[str, ET.Element] = {}
    events_seen: dict[tuple[str, str, str | None], ET.Element] = {}
    for dataset in datasets:
        for row in dataset.rows:
            study_id = str(row["study_id"]) if row.get("study_id") else None
            if study_id is None:
                continue
            subject = subjects.get(study_id)
            if subject is None:
                subject = subjects[study_id] = _el(clinical, "SubjectData", SubjectKey=study_id)
            event_oid, repeat = _event_of(dataset, row)
            key = (study_id, event_oid, repeat)
            event_el = events_seen.get(key)
            if event_el is None:
                attrs = {"StudyEventOID": event_oid}
                if repeat is not None:
                    attrs["StudyEventRepeatKey"] = repeat
                event_el = events_seen[key] = ET.SubElement(subject, f"{{{NS}}}StudyEventData", attrs)
            form_el = _el(event_el, "FormData", FormOID=_oid("F", dataset.name))
            group = _el(form_el, "ItemGroupData", ItemGroupOID=_oid("IG", dataset.name))
            recorded_at = row.get("_recorded_at")
            recorded_by = str(row.get("_recorded_by") or "system")
            for variable in _items(dataset):
                value = row.get(variable.name)
                if value is None or value == "":
                    continue
                data = _el(
                    group, "ItemData", ItemOID=item_oid(dataset, variable), Value=format_value(variable, value, tz)
                )
                audit = _el(data, "AuditRecord")
                _el(audit, "UserRef", UserOID=_oid("USR", recorded_by if recorded_by in USERS else "system"))
                _el(audit, "LocationRef", LocationOID=LOCATION)
                stamp = recorded_at if isinstance(recorded_at, datetime) else created
                _el(audit, "DateTimeStamp").text = stamp.astimezone(tz).isoformat(timespec="seconds")
                _el(audit, "SourceID").text = variable.source
    return root


def write_odm(datasets: list[Dataset], directory: Path, *, study_oid: str, tz: tzinfo, created: datetime) -> Path:
    """`trial_record_odm.xml`."""
    root = build_odm(
        datasets, study_oid=study_oid, study_name="SSc baricitinib vs methotrexate (BSMMU)", tz=tz, created=created
    )
    ET.indent(root)
    path = directory / "trial_record_odm.xml"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
