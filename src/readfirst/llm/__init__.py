"""LLM API clients and what their calls cost. Research (synthesis) and the proposers both
call models, so the clients sit below both; the ledger of calls is in store/ledger.py."""
