"""The search on many workers: one Optuna study, one storage, one envelope.

``paretrain search SPEC --workers N`` runs N worker processes here (``pool``); the same command
with ``--storage postgresql://...`` on other machines adds their workers to the same study.
Each worker (``trial_worker``) asks Optuna for trials and trains them; the money comes from the
study's one search envelope, kept next to the study in the same storage (``stored_envelope`` over
``books``): a trial reserves its worst case in a locked transaction before it trains, takes
more in chunks while it trains, and settles what it spent when it ends. A reservation carries
a lease that its worker renews; the reservation of a worker that dies counts as spent in full
once the lease runs out, and its trial is failed (Optuna's heartbeat, or the lapsed lease), so
the others go on. The guarantee: spent plus held never passes ``budget.envelopes.search``,
whatever the number of workers and machines and however their transactions interleave.

Storages: PostgreSQL (several machines; ``pip install 'paretrain[postgres]'``), sqlite (the
default; one machine, any number of workers), a journal file (one machine, file lock).
"""
