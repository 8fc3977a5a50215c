#!/usr/bin/env bash
# Re-applies each mutant of issue 11's table by hand, runs the test that must catch it
# (SQLite half), expects a FAILURE, and restores the file. Usage: bash tests/mutation/table_mutants.sh
T=tests/test_safety_paths.py
. "$(dirname "$0")/mutant.sh"

mutant "methotrexate: earliest earlier dose (max -> min)" domain/doses.py \
    's/select(func.max(DoseLog.answered_at))/select(func.min(DoseLog.answered_at))/' latest_earlier
mutant "dispatcher: status re-check removed" bot/dispatch.py \
    's/    if not store.is_messaged(participant, today):/    if False:/' withdrawn
mutant "follow-up re-check ignores Taken" domain/reminders.py \
    's/log_row.answer in (DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER)/log_row.answer in (DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER)/' after_taken
mutant "enrollment code lifetime: days read as hours" bot/handlers/admin.py \
    's/code_ttl=timedelta(days=settings.enrollment_code_days)/code_ttl=timedelta(hours=settings.enrollment_code_days)/' 13_days
mutant "shell enrollment code lifetime: days read as hours" cli/admin.py \
    's/code_ttl=timedelta(days=settings.enrollment_code_days)/code_ttl=timedelta(hours=settings.enrollment_code_days)/' from_the_shell
mutant "enrollment code: expires_at <= now read as <" domain/enrollment.py \
    's/if row.expires_at <= now:/if row.expires_at < now:/' exactly_14
mutant "arm B fever threshold >= 38.0 -> >" content/instruments/weekly_checkin.yaml \
    '/code: mtx_infection/,/reason:/s/greater_or_equal: 38.0/greater_than: 38.0/' 38_0
mutant "arm A fever threshold >= 38.0 -> >" content/instruments/weekly_checkin.yaml \
    '/code: bari_infection/,/reason:/s/greater_or_equal: 38.0/greater_than: 38.0/' 38_0
mutant "last week's grades never looked up" domain/questionnaire_sessions.py \
    's/    previous = await _previous_grades(db, participant, session, env)/    previous = None/' two_grades
mutant "RetryAfter minimum dropped" scheduler/outbox.py \
    's/row.next_attempt_at = now + max(queue.backoff(row.attempts), at_least)/row.next_attempt_at = now + queue.backoff(row.attempts)/' retry_after
mutant "rollback after a failed handler deleted" bot/app.py \
    '/^            if work.failed:$/,+1d' writes_and_then_fails
exit $status
