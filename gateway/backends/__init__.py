"""Model backends: each turns one brain\x27s wire protocol into gateway events and back."""
