# name: Quality-Diversity
# thought: Asking for solutions that differ from earlier ones explores more of the answer space; a final agent then picks from the diverse set.
def forward(self, taskInfo):
    cot_initial_instruction = "Please think step by step and then solve the task."
    qd_instruction = "Given previous attempts, try to come up with another interesting way to solve the task."
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature=0.8)
    final_decision_instruction = "Given all the above solutions, reason over them carefully and provide a final answer."
    final_decision_agent = LLMAgentBase(["thinking", "answer"], "Final Decision Agent", temperature=0.1)
    N_max = 3
    cot_inputs = [taskInfo]
    possible_answers = []
    thinking, answer = cot_agent(cot_inputs, cot_initial_instruction, 0)
    possible_answers.extend([thinking, answer])
    for i in range(N_max - 1):
        cot_inputs.extend([thinking, answer])
        thinking, answer = cot_agent(cot_inputs, qd_instruction, i + 1)
        possible_answers.extend([thinking, answer])
    thinking, answer = final_decision_agent([taskInfo] + possible_answers, final_decision_instruction)
    return answer
