from headwater.transform.dbt import BuildResult, DbtProject, NodeResult, count_rows, describe_failure

__all__ = ["BuildResult", "DbtProject", "NodeResult", "count_rows", "describe_failure"]
