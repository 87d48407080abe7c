from headwater.config.loader import PROJECT_FILE, find_project_root, load_project
from headwater.config.model import Chart, Dashboard, LoadedProject, Pipeline, Project

__all__ = ["PROJECT_FILE", "Chart", "Dashboard", "LoadedProject", "Pipeline", "Project", "find_project_root", "load_project"]
