"""The shell admin CLI (`python -m cli …`): the admin actions for scripts and for when
Telegram is unreachable. It sits beside the bot, on the same domain and database."""
