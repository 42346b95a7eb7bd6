"""Virtual keys at the ingress: hashed keys in a database, per-key limits and budgets,
usage with cost and routing savings. Runtime only; the CLI lives in tooling/keytools."""
