"""One labeling-task batch, step by step: ``load`` -> ``predict`` -> ``write`` -> ``record``.

``app.tasks.engine.run_batch`` is the orchestrator that calls them in that order; no step calls
back into a higher layer, and what follows from the annotations (queues, events) is derived by
the annotation listeners (``app.annotations.changes``).
"""
