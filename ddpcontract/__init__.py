"""The contract between ddpui's processes: what Django, the proxy and the flows say to each other.

A pure-Python leaf package: it imports neither Django nor Prefect (pydantic only), so every process can
import it. Each name that crosses a process boundary is defined here, once:

- `ddpcontract.tasks`: task types, kinds and slugs, and the task config (the deployment parameters Django
  writes and the flow reads), validated on both sides;
- `ddpcontract.flows`: the flows' entrypoints, names, parameters and the results they publish;
- `ddpcontract.states`: flow-run state types and the order in which a run moves through them.
"""
