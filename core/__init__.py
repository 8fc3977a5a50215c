"""The bottom layer: settings, the clock, digits and the bilingual text type.

Imports nothing of ours, so every other package (bot, cli, domain, scheduler,
models, export, migrations) may import it."""
