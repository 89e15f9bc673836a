"""The experiment loop: scheduling, workers, executors, landing, finalize."""
