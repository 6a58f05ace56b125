"""The proxy: a small stateless FastAPI service, the only code in ddpui that talks to the Prefect API."""
