"""Routes are added by the issue that builds this resource."""

from ninja import Router

router = Router()
