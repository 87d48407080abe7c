from headwater.transform.dbt import BuildResult, DbtProject, NodeResult, describe_failure

__all__ = ["BuildResult", "DbtProject", "NodeResult", "describe_failure"]
