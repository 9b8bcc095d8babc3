"""fundguard.optimizer.job: the job around the library, from a config file to the outputs.

Modules, lowest first; each imports only the ones above it and, of the library, ``fundguard.models``
and the optimizer's problem, solve, certify, fund and policy modules (tests/test_job_layout.py):

* :mod:`.outputs` — atomic files and folders, output locks, ``json_safe``, ``sha256_file``,
  ``package_versions``;
* :mod:`.config` — the calibration config (TOML or mapping), validated once, ``file:line`` errors;
  ``parse_vol_spec``, the one reader of VOL-DIST text;
* :mod:`.preset` — the built-in preset (``presets/default.json``) and ``fundguard preset build``;
* :mod:`.compute` — where a run computes and whether it fits: CPUs, memory, the Dask client;
* :mod:`.summaries` — fund paths, required funds, tail, stress outcomes, model summaries, notes;
* :mod:`.build` — config -> models, venue book, stress scenarios, policy problem, the run's seeds;
* :mod:`.calibrate` — the calibrate pipeline (:func:`~.calibrate.run_calibration`, told where to compute);
* :mod:`.balance` — the daily check (``check_balance``);
* :mod:`.report` — ``result.json`` schema, ``report.md``, plots;
* :mod:`.cli` — the ``fundguard`` command line.

This package exports no names of its own, so that ``import fundguard.optimizer.job.calibrate``
is always the module (``fundguard.optimizer.calibrate`` is the function).
"""
