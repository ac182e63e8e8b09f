"""cryptolake: a local-first crypto market lakehouse (CoinGecko -> DuckDB -> Postgres)."""

__version__ = "0.1.0"
