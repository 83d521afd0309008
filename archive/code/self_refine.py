# name: Self-Refine (Reflexion)
# thought: A first attempt, then a critic's feedback and a revision, repeated until the critic is satisfied, fixes mistakes the first pass makes.
def forward(self, taskInfo):
    cot_initial_instruction = "Please think step by step and then solve the task."
    cot_reflect_instruction = ("Given previous attempts and feedback, carefully consider where you could go wrong "
                               "in your latest attempt. Using insights from previous attempts, try to solve the task better.")
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent")
    critic_instruction = ("Please review the answer above and criticize on where might be wrong. "
                          "If you are absolutely sure it is correct, output 'True' in 'correct'.")
    critic_agent = LLMAgentBase(["feedback", "correct"], "Critic Agent")
    N_max = 3
    cot_inputs = [taskInfo]
    thinking, answer = cot_agent(cot_inputs, cot_initial_instruction, 0)
    for i in range(N_max):
        feedback, correct = critic_agent([taskInfo, thinking, answer], critic_instruction, i)
        if correct.content.strip() == "True":
            break
        cot_inputs.extend([thinking, answer, feedback])
        thinking, answer = cot_agent(cot_inputs, cot_reflect_instruction, i + 1)
    return answer
