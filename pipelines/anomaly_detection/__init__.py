"""Time-series anomaly detection: NAB-layout or sensor CSV series in, anomaly scores and flags out."""
