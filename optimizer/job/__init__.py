"""fundguard.optimizer.job: the job around the library, from a config file to the outputs.

Modules (each imports only the ones above it, and the library below it: ``fundguard.models``
and the optimizer's problem, solve, certify and policy modules):

* :mod:`.outputs` — atomic files and folders, output locks, ``json_safe``, ``sha256_file``,
  ``package_versions``;
* :mod:`.config` — the calibration config (TOML or mapping), validated once, ``file:line`` errors;
* :mod:`.preset` — the built-in preset (``presets/default.json``) and ``fundguard preset build``;
* :mod:`.calibrate` — the calibrate pipeline (in memory or on a Dask cluster) and the daily check;
* :mod:`.report` — ``result.json`` schema, ``report.md``, plots;
* :mod:`.cli` — the ``fundguard`` command line.

This package exports no names of its own, so that ``import fundguard.optimizer.job.calibrate``
is always the module (``fundguard.optimizer.calibrate`` is the function).
"""
