#!/usr/bin/env bash
# Hand-made mutants of the dispatcher's promises (re-check, back-off, what a send leaves),
# each against tests/test_dispatch_promises.py: expects every one to be KILLED.
# The seds match the batched dispatcher (issue 18: bot/dispatch.py, domain/reminders.py,
# scheduler/outbox.py); after a rewrite they may print NOT APPLIED: the tests are the
# durable part, re-aim the seds at the new code. Usage: bash tests/mutation/dispatch_mutants.sh
T=tests/test_dispatch_promises.py
. "$(dirname "$0")/mutant.sh"

mutant "back-off uncapped" scheduler/outbox.py 's/return min(self.first_delay \* (1 << doublings), self.max_delay)/return self.first_delay * (1 << doublings)/' back_off
mutant "back-off first delay doubled" scheduler/outbox.py 's/doublings = min(max(attempts - 1, 0), 32)/doublings = min(max(attempts, 0), 32)/' back_off
mutant "RetryAfter replaces the back-off" scheduler/outbox.py 's/row.next_attempt_at = now + max(queue.backoff(row.attempts), at_least)/row.next_attempt_at = now + at_least/' retry_after_shorter
mutant "follow-up ignores Skipped" domain/reminders.py 's/(DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER)/(DoseAnswer.TAKEN, DoseAnswer.NO_ANSWER)/' final_answer
mutant "follow-up ignores No answer" domain/reminders.py 's/(DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER)/(DoseAnswer.TAKEN, DoseAnswer.SKIPPED)/' final_answer
mutant "follow-up treats Later as an answer" domain/reminders.py 's/(DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER)/(DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER, DoseAnswer.LATER)/' only_said_later
mutant "close keeps Later open" domain/reminders.py 's/log_row.answer in (None, DoseAnswer.LATER)/log_row.answer in (None,)/' left_at_later
mutant "close overwrites any answer" domain/reminders.py 's/elif log_row.answer in (None, DoseAnswer.LATER):/elif True:/' keeps_an_answer
mutant "close without a log row reported as skipped for another reason" domain/reminders.py 's/"no reminder was sent"/"skipped"/' left_no_log
mutant "recently answered: > instead of >=" domain/reminders.py 's/QuestionnaireSession.completed_at >= now - RECENTLY_ANSWERED/QuestionnaireSession.completed_at > now - RECENTLY_ANSWERED/' last_3_days
mutant "recently answered: any instrument" domain/reminders.py 's/if (participant.id, str(payload.get("instrument", ""))) in facts.recently_answered:/if participant.id in {p for p, _i in facts.recently_answered}:/;s/QuestionnaireSession.instrument_id.in_({str(r.payload.get("instrument", "")) for r in invited}),//' last_3_days
mutant "visit recorded means DONE only" domain/reminders.py 's/visit.status is not VisitStatus.PLANNED/visit.status is VisitStatus.DONE/' recorded_visit
mutant "missed-visit alert not raised" domain/reminders.py 's/kind="visit_missed",/kind="visit_late",/' window_closing
mutant "dose log opened again on a re-send" domain/reminders.py 's/    await insert_new(session, DoseLog, logs, ("participant_id", "reminder_key"))/    await session.execute(DoseLog.__table__.delete().where(DoseLog.reminder_key.in_([r["reminder_key"] for r in logs])))\n    await insert_new(session, DoseLog, logs, ("participant_id", "reminder_key"))/' keeps_its_first
mutant "follow-up not planned" domain/reminders.py 's/        if followup is not None:/        if False:/' opens_its_dose_log
mutant "unknown kinds sent" bot/dispatch.py 's/elif row.kind not in _MESSAGE_KINDS:/elif False:/' kind_the_bot
mutant "no-chat check dropped" bot/dispatch.py 's/elif (chat_id := chats.get(participant.id)) is None:/elif (chat_id := chats.get(participant.id)) is None and False:/' unlinked
mutant "auto-resume a day late" domain/reminders.py 's/                    Participant.paused_until <= today,/                    Participant.paused_until < today,/' pause_whose_end
exit $status
