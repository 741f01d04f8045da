"""Storage harness tests share one real SeaweedFS cluster per session (``mcresolve_storage_cluster``
from the plugin enabled in ``tests/conftest.py``)."""
