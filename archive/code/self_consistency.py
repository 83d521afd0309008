# name: Self-Consistency with Chain-of-Thought
# thought: Several independent chains of thought at a higher temperature, then a majority vote over their answers, are more reliable than any single chain.
def forward(self, taskInfo):
    from collections import Counter

    instruction = "Please think step by step and then solve the task."
    N = 5
    cot_agents = [LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature=0.8) for _ in range(N)]

    def majority_voting(answers):
        return Counter(answers).most_common(1)[0][0]

    possible_answers = []
    for i in range(N):
        thinking, answer = cot_agents[i]([taskInfo], instruction)
        possible_answers.append(answer.content)
    return majority_voting(possible_answers)
