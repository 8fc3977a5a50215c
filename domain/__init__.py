"""Clinical and trial logic. Knows nothing about Telegram."""
