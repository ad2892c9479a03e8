"""Servers context: inventory, pool policies, the allocation worker, replenishment, migration and cost views."""
