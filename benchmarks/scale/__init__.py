"""Scale benchmark: large services, churn, many watched services, sharing (``bench_scale.py``)."""
