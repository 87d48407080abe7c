from headwater.publish.publish import PublishPlan, nothing_to_publish, plan, publish
from headwater.publish.reader import Column, PublishedData

__all__ = ["Column", "PublishPlan", "PublishedData", "nothing_to_publish", "plan", "publish"]
