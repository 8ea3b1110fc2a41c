"""Tenant database bootstrap: versioned SQL applied idempotently in one transaction."""
