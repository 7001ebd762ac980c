"""A local LLM server speaking the OpenAI, Ollama, Anthropic and Gemini wire protocols,
with scripted faults (error statuses, delays, drops, truncation, broken JSON, stalls).

    async with Simulator(tokens_per_s=0) as sim:
        sim.script(Fault(status=429, retry_after=2))
        ...  # point a client at sim.base_url("openai")
"""

from desktop_app.simulator.server import Fault, RecordedRequest, Simulator, SimulatorThread

__all__ = ["Fault", "RecordedRequest", "Simulator", "SimulatorThread"]
