# name: Step-back Abstraction
# thought: First naming the principles and concepts a task involves, then solving it with them in view, grounds the reasoning.
def forward(self, taskInfo):
    principle_instruction = "What are the physics, chemistry or biology principles and concepts involved in solving this task? First think step by step. Then list all involved principles and explain them."
    cot_instruction = "Given the question and the involved principle behind the question, think step by step and then solve the task."
    principle_agent = LLMAgentBase(["thinking", "principle"], "Principle Agent")
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent")
    thinking, principle = principle_agent([taskInfo], principle_instruction)
    thinking, answer = cot_agent([taskInfo, thinking, principle], cot_instruction)
    return answer
