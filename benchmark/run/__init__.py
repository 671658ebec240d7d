"""Orchestration: plans, jobs, executors, records, tracking and progress.

May import every layer below it (config, engine, components, schema); never the CLI or the report.
"""
