from headwater.publish.publish import PublishPlan, nothing_to_publish, plan, publish, published_tables
from headwater.publish.reader import Column, PublishedData

__all__ = ["Column", "PublishPlan", "PublishedData", "nothing_to_publish", "plan", "publish", "published_tables"]
