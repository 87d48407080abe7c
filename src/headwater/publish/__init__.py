from headwater.publish.publish import PublishPlan, plan, publish, published_tables
from headwater.publish.reader import Column, PublishedData

__all__ = ["Column", "PublishPlan", "PublishedData", "plan", "publish", "published_tables"]
