"""The ``evaluate`` metric module (load it by folder path: ``evaluate.load(SR_METRICS_PATH)``)."""
