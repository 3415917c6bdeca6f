"""Early-warning operations: daily run, alerts, delivery, interventions."""
