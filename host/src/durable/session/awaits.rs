//! Awaiting tasks: `await-all`, `await-any`, and how events answer event
//! waits.
//!
//! Event binding: the pending event waits for a name, in schedule order,
//! take that name's unconsumed events in arrival order. The binding is
//! recomputed at every check and becomes final only when an await returns
//! the wait's answer; the answer records the event's arrival, so a replay
//! consumes exactly the events the live run consumed, whatever order the
//! messages reach it in.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Fault, Session, TaskState};
use crate::durable::journal::{self, Answer, Call};

impl Session {
    fn check_awaitable(&self, tasks: &[u64]) -> Result<(), Fault> {
        let mut distinct = HashSet::new();
        for task in tasks {
            match self.tasks.get(task).map(|t| t.state) {
                Some(TaskState::Pending) if distinct.insert(*task) => {}
                Some(TaskState::Pending) => {
                    return Err(Fault::BadCall(format!(
                        "task {task} is awaited twice in one call"
                    )));
                }
                Some(TaskState::Awaited) => {
                    return Err(Fault::BadCall(format!(
                        "task {task} was awaited or cancelled already"
                    )));
                }
                None => return Err(Fault::BadCall(format!("no task {task} was scheduled"))),
            }
        }
        Ok(())
    }

    /// The events each pending event wait would take now: task -> arrival.
    fn bind_events(&self) -> HashMap<u64, i64> {
        let mut bound = HashMap::new();
        if self.event_waits.is_empty() {
            return bound;
        }
        let mut by_name: HashMap<&str, VecDeque<i64>> = HashMap::new();
        for (arrival, (name, _)) in &self.events {
            by_name.entry(name).or_default().push_back(*arrival);
        }
        for (task, name) in &self.event_waits {
            if let Some(arrival) = by_name.get_mut(name.as_str()).and_then(VecDeque::pop_front) {
                bound.insert(*task, arrival);
            }
        }
        bound
    }

    /// The answer of `task` if known, with its arrival (for await-any).
    fn settled(&self, task: u64, bound: &HashMap<u64, i64>) -> Option<(i64, Answer)> {
        if let Some((arrival, outcome)) = self.completions.get(&task) {
            return Some((*arrival, Answer::from(outcome.clone())));
        }
        let arrival = *bound.get(&task)?;
        let (_, data) = self.events.get(&arrival)?;
        Some((
            arrival,
            Answer {
                outcome: Ok(data.clone()),
                event: Some(arrival),
            },
        ))
    }

    /// Marks tasks awaited and the events their answers took consumed.
    fn settle(&mut self, tasks: &[u64], answers: &[&Answer]) {
        for task in tasks {
            if let Some(entry) = self.tasks.get_mut(task) {
                entry.state = TaskState::Awaited;
            }
            self.event_waits.remove(task);
        }
        for answer in answers {
            if let Some(arrival) = answer.event {
                self.events.remove(&arrival);
                self.consumed_events.push(arrival);
            }
        }
    }

    pub(crate) async fn await_all(&mut self, tasks: &[u64]) -> Result<Vec<Answer>, Fault> {
        self.check_awaitable(tasks)?;
        let call = Call::await_all(tasks);
        let answers = match self.replayed(&call)? {
            Some(result) => result
                .as_deref()
                .and_then(journal::parse_await_all)
                .filter(|a| a.len() == tasks.len())
                .ok_or_else(|| self.corrupt(&call))?,
            None => {
                let long = self.waits_long(tasks);
                let answers = self
                    .wait(long, |s| {
                        let bound = s.bind_events();
                        tasks
                            .iter()
                            .map(|t| s.settled(*t, &bound).map(|(_, answer)| answer))
                            .collect::<Option<Vec<_>>>()
                    })
                    .await?;
                self.record(call, Some(journal::await_all_result(&answers)));
                answers
            }
        };
        self.settle(tasks, &answers.iter().collect::<Vec<_>>());
        Ok(answers)
    }

    pub(crate) async fn await_any(&mut self, tasks: &[u64]) -> Result<(usize, Answer), Fault> {
        if tasks.is_empty() {
            return Err(Fault::BadCall("await-any needs at least one task".into()));
        }
        self.check_awaitable(tasks)?;
        let call = Call::await_any(tasks);
        let (index, answer) = match self.replayed(&call)? {
            Some(result) => result
                .as_deref()
                .and_then(journal::parse_await_any)
                .filter(|(i, _)| *i < tasks.len())
                .ok_or_else(|| self.corrupt(&call))?,
            None => {
                let long = self.waits_long(tasks);
                let (index, answer) = self
                    .wait(long, |s| {
                        let bound = s.bind_events();
                        // The earliest arrival wins, so the answer does not
                        // depend on the order notifications were read in.
                        tasks
                            .iter()
                            .enumerate()
                            .filter_map(|(i, t)| {
                                s.settled(*t, &bound).map(|(a, answer)| (a, i, answer))
                            })
                            .min_by_key(|(arrival, _, _)| *arrival)
                            .map(|(_, i, answer)| (i, answer))
                    })
                    .await?;
                self.record(call, Some(journal::await_any_result(index, &answer)));
                (index, answer)
            }
        };
        self.settle(&tasks[index..=index], &[&answer]);
        Ok((index, answer))
    }
}
