from headwater.orchestrate.run import RunOutcome, choose_pipeline, open_system_db, run_pipeline

__all__ = ["RunOutcome", "choose_pipeline", "open_system_db", "run_pipeline"]
