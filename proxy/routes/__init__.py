"""The proxy's routes, one router per resource; each handler is thin: parse, call one service, return its model."""

from proxy.routes import automations, blocks, deployments, flow_runs, health, legacy, outgoing, task_runs

ROUTERS = [
    blocks.router,
    deployments.router,
    flow_runs.router,
    task_runs.router,
    automations.router,
    outgoing.router,
    legacy.router,
    health.router,
]
