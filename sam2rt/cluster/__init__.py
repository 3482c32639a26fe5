"""Scale-out on Ray: many videos (``sam2rt track-batch``) and many cameras (``sam2rt fleet``).

An optional extra (``pip install -e ".[ray]"``). Ray schedules the work on the CPUs and GPUs of a cluster,
restarts dead actors and retries their calls; the same code runs on a local ``ray.init()`` (the tests).
Importing this package (and :mod:`sam2rt.cluster.jobs`, :mod:`sam2rt.cluster.fleet_config`) imports no Ray;
:mod:`sam2rt.cluster.batch` and :mod:`sam2rt.cluster.fleet` do, through :func:`require_ray`, which says how
to install it when it is missing. See docs/scale.md.
"""
