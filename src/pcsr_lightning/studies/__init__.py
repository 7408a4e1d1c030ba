"""Studies: experiments as configs (``conf/study/*.yaml``), run by ``pcsr-study study=NAME``.

A study declares its photo folders by role (train, val, report), steps that train, evaluate, time or
select, and its report. ``plan`` checks it whole (no setting chosen on report photos, no report photos
that trained or chose), ``driver`` runs its steps' jobs on Hydra's launcher, ``jobs`` runs one job,
``actions`` are what a job can do, ``select`` the rules that choose, ``report`` the tables and plots.
"""
