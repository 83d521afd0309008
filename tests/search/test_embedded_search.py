"""Meta-agent proposals and code agents on the real embedded model."""

from __future__ import annotations

import pytest

from agentmeta.agents import find_seed
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.meta_agent import MetaAgentSearch
from agentmeta.search.strategy import ProposalContext

pytestmark = pytest.mark.embedded


def test_graph_proposals_from_the_embedded_model_are_valid(embedded, tmp_path, suite_file):
    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(suite=suite_file, kind="graph", iterations=0, subset=2, full=2, reflexion_rounds=0)
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    strategy = MetaAgentSearch(reflexion_rounds=0)
    valid = 0
    for i in range(2):
        ctx = ProposalContext(
            archive=archive,
            campaign=camp.record.id,
            kind="graph",
            task_description=camp._task_description(),
            iteration=i,
            seed=0,
            meta_model=embedded,
            candidates=camp._candidates(),
        )
        proposal = strategy.propose(ctx)
        proposal.spec.build()  # raises if the candidate is not a valid graph
        valid += 1
    assert valid == 2


def test_adas_seed_code_agent_runs_in_the_sandbox_on_the_embedded_model(embedded):
    agent = find_seed("code/chain_of_thought").build()
    result = agent.run_raw("What is 2 + 3?", embedded)
    assert result.ok, result.error
    assert result.llm_calls == 1
    assert isinstance(result.value, str) and result.value.strip()
