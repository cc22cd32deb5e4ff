//! The Files tab's toolbar: where you are (Up, the crumbs, a path field), what you can do with
//! the selection, the file pickers; and the one-field form that a new folder, a rename or a
//! chmod opens. It holds no state of the pane's: it shows what it is given and says what was
//! asked as a [`Tool`].

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// A toolbar button (or the hidden-files switch).
#[derive(Clone, Copy, PartialEq)]
pub enum Tool {
    Up,
    NewFolder,
    Download,
    Rename,
    Chmod,
    Delete,
    TerminalHere,
    ShowHidden(bool),
    Undo,
}

#[derive(Properties, PartialEq)]
pub struct ToolbarProps {
    /// The directory shown.
    pub path: String,
    pub connected: bool,
    /// How many rows are selected.
    pub selected: usize,
    pub show_hidden: bool,
    /// Whether the last delete can be undone.
    pub can_undo: bool,
    pub on_go: Callback<String>,
    pub on_tool: Callback<Tool>,
    /// A file chosen to upload, with its path inside a chosen folder (else its name).
    pub on_file: Callback<(web_sys::File, String)>,
}

#[function_component(Toolbar)]
pub fn toolbar(props: &ToolbarProps) -> Html {
    let file_input = use_node_ref();
    let folder_input = use_node_ref();
    let path_field = use_node_ref();
    // The path field is filled when the directory changes, never on a re-render (a `value`
    // attribute would put it back over what is being typed).
    {
        let path_field = path_field.clone();
        use_effect_with(props.path.clone(), move |path| {
            if let Some(input) = path_field.cast::<web_sys::HtmlInputElement>() {
                input.set_value(path);
            }
        });
    }

    let button = |label: &'static str, class: &'static str, enabled: bool, tool: Tool| {
        html! { <button {class} disabled={!enabled} onclick={tool_click(&props.on_tool, tool)}>{ label }</button> }
    };
    let crumbs = {
        let mut parts = vec![("/".to_owned(), "/".to_owned())];
        let mut at = String::new();
        for part in props.path.split('/').filter(|p| !p.is_empty()) {
            at = format!("{at}/{part}");
            parts.push((part.to_owned(), at.clone()));
        }
        parts.into_iter().map(|(label, target)| {
            let on_go = props.on_go.clone();
            html! { <button class="crumb" onclick={Callback::from(move |_: MouseEvent| on_go.emit(target.clone()))}>{ label }</button> }
        })
    };
    // Type a path and press Enter to go there.
    let on_path = {
        let on_go = props.on_go.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let form = e.target().and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok());
            let input = form
                .and_then(|f| f.elements().named_item("path"))
                .and_then(|i| i.dyn_into::<web_sys::HtmlInputElement>().ok());
            if let Some(input) = input {
                on_go.emit(input.value());
            }
        })
    };
    let click = |input: NodeRef| {
        Callback::from(move |_: MouseEvent| {
            if let Some(input) = input.cast::<web_sys::HtmlElement>() {
                input.click();
            }
        })
    };
    // Files chosen with a picker (a folder's keep their paths inside it).
    let chosen = |input: NodeRef| {
        let on_file = props.on_file.clone();
        Callback::from(move |_: Event| {
            let Some(input) = input.cast::<web_sys::HtmlInputElement>() else { return };
            if let Some(files) = input.files() {
                for file in (0..files.length()).filter_map(|index| files.get(index)) {
                    let relative = js_sys::Reflect::get(&file, &JsValue::from_str("webkitRelativePath"))
                        .ok()
                        .and_then(|v| v.as_string())
                        .unwrap_or_default();
                    let name = if relative.is_empty() { file.name() } else { relative };
                    on_file.emit((file, name));
                }
            }
            input.set_value("");
        })
    };
    let toggle_hidden = {
        let (on_tool, shown) = (props.on_tool.clone(), props.show_hidden);
        Callback::from(move |_: Event| on_tool.emit(Tool::ShowHidden(!shown)))
    };
    let (connected, some, single) = (props.connected, props.selected > 0, props.selected == 1);
    html! {
        <>
            <div class="file-tools">
                { button("Up", "up", connected, Tool::Up) }
                <nav class="crumbs">{ for crumbs }</nav>
                <form class="goto" onsubmit={on_path}>
                    <input ref={path_field} name="path" class="path" placeholder="Go to a path" />
                </form>
                <label class="hidden-toggle"><input type="checkbox" checked={props.show_hidden} onchange={toggle_hidden} />{ "Hidden files" }</label>
            </div>
            <div class="file-tools">
                { button("New folder", "mkdir", connected, Tool::NewFolder) }
                <button class="upload" disabled={!connected} onclick={click(file_input.clone())}>{ "Upload" }</button>
                <input ref={file_input.clone()} type="file" multiple=true class="file-input" onchange={chosen(file_input)} />
                <button class="upload-folder" disabled={!connected} onclick={click(folder_input.clone())}>{ "Upload folder" }</button>
                <input ref={folder_input.clone()} type="file" webkitdirectory=true class="file-input folder-input" onchange={chosen(folder_input)} />
                { button("Download", "download", some, Tool::Download) }
                { button("Rename", "rename", single, Tool::Rename) }
                { button("Permissions", "chmod", single, Tool::Chmod) }
                { button("Delete", "delete", some, Tool::Delete) }
                { button("Terminal here", "terminal-here", connected, Tool::TerminalHere) }
                if props.can_undo { <button class="undo" onclick={tool_click(&props.on_tool, Tool::Undo)}>{ "Undo delete" }</button> }
            </div>
        </>
    }
}

fn tool_click(on_tool: &Callback<Tool>, tool: Tool) -> Callback<MouseEvent> {
    let on_tool = on_tool.clone();
    Callback::from(move |_: MouseEvent| on_tool.emit(tool))
}

/// An edit in progress in the toolbar's field.
#[derive(Clone, PartialEq)]
pub enum Edit {
    NewFolder,
    Rename(String),
    Chmod(String, u32),
}

#[derive(Properties, PartialEq)]
pub struct EditProps {
    pub edit: Edit,
    /// OK, with what was typed.
    pub on_submit: Callback<String>,
    pub on_cancel: Callback<()>,
}

/// The field a new folder, a rename or a chmod asks with.
#[function_component(EditForm)]
pub fn edit_form(props: &EditProps) -> Html {
    let field = use_node_ref();
    // Filled when what it edits changes, never on a re-render (a status update every second):
    // a `value` attribute would put its value back over what is being typed.
    {
        let field = field.clone();
        use_effect_with(props.edit.clone(), move |edit| {
            let value = match edit {
                Edit::NewFolder => String::new(),
                Edit::Rename(name) => name.clone(),
                Edit::Chmod(_, mode) => format!("{mode:o}"),
            };
            if let Some(input) = field.cast::<web_sys::HtmlInputElement>() {
                input.set_value(&value);
            }
        });
    }
    let label = match &props.edit {
        Edit::NewFolder => "New folder",
        Edit::Rename(_) => "Rename to",
        Edit::Chmod(..) => "Mode (octal)",
    };
    let onsubmit = {
        let (on_submit, field) = (props.on_submit.clone(), field.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(input) = field.cast::<web_sys::HtmlInputElement>() {
                on_submit.emit(input.value());
            }
        })
    };
    let cancel = {
        let on_cancel = props.on_cancel.clone();
        Callback::from(move |_: MouseEvent| on_cancel.emit(()))
    };
    html! {
        <form class="edit" {onsubmit}>
            <label>{ label }<input ref={field} name="value" autofocus=true /></label>
            <button type="submit">{ "OK" }</button>
            <button type="button" onclick={cancel}>{ "Cancel" }</button>
        </form>
    }
}
