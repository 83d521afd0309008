# name: Dynamic Assignment of Roles
# thought: A routing agent first chooses which expert fits the task; that expert then solves it in its role.
def forward(self, taskInfo):
    cot_instruction = "Please think step by step and then solve the task."
    expert_agents = [LLMAgentBase(["thinking", "answer"], "Expert Agent", role=role)
                     for role in ["Math Professor", "Grade School Teacher", "Math Enthusiast", "Helpful Assistant"]]
    routing_instruction = "Given the task, please choose an Expert to answer the question. Choose from: Math Professor, Grade School Teacher, Math Enthusiast."
    routing_agent = LLMAgentBase(["choice"], "Routing agent")
    choice = routing_agent([taskInfo], routing_instruction)[0]
    text = choice.content.lower()
    if "professor" in text:
        expert_id = 0
    elif "teacher" in text:
        expert_id = 1
    elif "enthusiast" in text:
        expert_id = 2
    else:
        expert_id = 3
    thinking, answer = expert_agents[expert_id]([taskInfo], cot_instruction)
    return answer
