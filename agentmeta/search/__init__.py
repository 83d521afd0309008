"""Search: strategies behind one protocol and the campaign runner."""

from agentmeta.search.campaign import Campaign, CampaignResult, SearchConfig, search
from agentmeta.search.confirm import Confirmation, confirm
from agentmeta.search.operators import NotApplicable, OperatorContext, register_operator
from agentmeta.search.strategy import Proposal, ProposalContext, Strategy

__all__ = [
    "Campaign",
    "CampaignResult",
    "Confirmation",
    "NotApplicable",
    "OperatorContext",
    "Proposal",
    "ProposalContext",
    "SearchConfig",
    "Strategy",
    "confirm",
    "register_operator",
    "search",
]
