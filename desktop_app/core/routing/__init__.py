"""Auto: analyse a question, route it to a target, check the answer, escalate.

:mod:`.analysis` reads the question (no network), :mod:`.table` chooses the target,
:mod:`.cache` remembers routes on disk, :mod:`.judge` builds and reads the classifier's
and the judge's requests, and :mod:`.auto` runs the stages around the engine as one turn.
:mod:`.profile` is the ``kind = "auto"`` profile as the config file holds it.
"""
