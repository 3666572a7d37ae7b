"""Stock forecasting: OHLCV CSV in, multi-step close forecast out, always beside naive baselines."""
