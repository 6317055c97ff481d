"""`auditq sweep`: audit many candidate checkpoints against one BASE (and RETRAIN) and rank them.

options.py builds and checks the SweepOptions (torch-free, the light stage); run.py audits each candidate with
the ordinary audit core and the shared result cache (BASE and RETRAIN are measured for the first candidate and
served from the cache afterwards); rank.py reads each candidate's AuditReport into one ranked summary;
render.py writes sweep.json, sweep.md and sweep.html (a table sorted by robustness and a plot).
"""
