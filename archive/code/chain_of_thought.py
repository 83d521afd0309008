# name: Chain-of-Thought
# thought: Reasoning step by step before answering lets the model break a problem into parts and lowers careless errors.
def forward(self, taskInfo):
    instruction = "Please think step by step and then solve the task."
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent")
    thinking, answer = cot_agent([taskInfo], instruction)
    return answer
