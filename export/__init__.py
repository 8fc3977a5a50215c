"""The trial-record export: CSV with a data dictionary, SPSS .sav with labels,
and CDISC ODM 1.3.2 XML, all generated from one set of dataset definitions
(`export.datasets`), keyed by study id, with no Telegram ids or names."""
