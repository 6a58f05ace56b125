"""Client for the Airbyte config API."""

from ddpui.airbyte.client import AirbyteClient, AirbyteError, AirbyteNotFound, AirbyteUnavailable, get_airbyte

__all__ = ["AirbyteClient", "AirbyteError", "AirbyteNotFound", "AirbyteUnavailable", "get_airbyte"]
