"""Many objects: a catalogue of lenses in, fit folders and one results table out, on Dask.

:func:`fit_catalog` (what ``vaelens batch`` runs) fits every row of a catalogue
(:mod:`vaelens.survey.catalog`) with :func:`vaelens.infer.fit_lens`, each object a task on a
Dask cluster (:mod:`vaelens.survey.engine`; an embedded ``LocalCluster`` by default), writes
``OUT/<id>/`` per object and ``OUT/results.csv`` (:mod:`vaelens.survey.results`) as objects
finish, records failures without stopping, and resumes an interrupted run. Dask is the optional
extra ``vaelens[survey]``.

Example::

    from vaelens.survey import fit_catalog

    res = fit_catalog("lenses.csv", "fits/", options={"method": "map", "starts": 8},
                      workers=4)
    res.results[["id", "status", "theta_E", "theta_E_sd"]]
"""

from vaelens.survey.batch import BatchResult, fit_catalog
from vaelens.survey.catalog import CatalogRow, LensCatalogError, read_catalog
from vaelens.survey.options import DEFAULT_OPTIONS, OPTIONS
from vaelens.survey.results import COLUMNS, PARAMETER_UNITS, ResultsTable, column_description

__all__ = [
    "COLUMNS",
    "DEFAULT_OPTIONS",
    "OPTIONS",
    "PARAMETER_UNITS",
    "BatchResult",
    "CatalogRow",
    "LensCatalogError",
    "ResultsTable",
    "column_description",
    "fit_catalog",
    "read_catalog",
]
